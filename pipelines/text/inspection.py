"""Inside the transformer: its attention weights for a text, one head recomputed by hand from the layer's own
queries, keys and values, and how surprising a text is (perplexity and per-token surprisal) to the transformer and to
the word n-gram model.

Surprisal is -log2 p, in bits: 1 bit is a coin flip, 10 bits a one-in-a-thousand pick. Perplexity is 2 to the
power of the mean surprisal: the number of equally likely choices the model was, on average, torn between.
"""

from __future__ import annotations

import math
import sys
import threading
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from pipelines.core.limits import Range, is_whole_number
from pipelines.text.generation import Generation, SamplingSettings, TextGenerator
from pipelines.text.ngram import NgramModel, split_words
from pipelines.text.options import (
    ATTENTION_HEAD,
    ATTENTION_LAYER,
    ATTENTION_SHOWN_TOKENS,
    MAX_ATTENTION_TOKENS,
    MAX_INSPECTED_CHARACTERS,
    MAX_PERPLEXITY_CHARACTERS,
)

HIDDEN_FUTURE = "#eeeeee"  # the heat-maps' colour for the cells the causal mask hides
# GPT-2-style tokenizers (SmolLM2's among them) mark document boundaries with this token in pretraining.
DOCUMENT_SEPARATOR = "<|endoftext|>"


# ---------------------------------------------------------------------------------------------
# Perplexity


@dataclass(frozen=True)
class TokenSurprisal:
    """One token (or word) of a scored text and how surprising the model found it."""

    text: str  # the token (or word) as it reads in the text, with the spaces before it: the pieces join into the text
    surprisal_bits: float  # -log2 p(this token | every token before it)


@dataclass(frozen=True)
class PerplexityResult:
    """A text's perplexity, 2 ** (mean surprisal in bits), and the surprisal of each of its tokens.

    The first token has no text before it. The transformer predicts it from the token that starts a document
    (`document_start_id`), the n-gram model from plain word frequencies, so every token is scored and counted.
    """

    perplexity: float
    tokens: list[TokenSurprisal]
    unit: str = "token"  # what one entry of `tokens` is: "token" (the transformer's) or "word" (the n-gram model's)

    @property
    def total_bits(self) -> float:
        """The text's whole surprisal: the bits a code built on this model would need to write it down."""
        return sum(token.surprisal_bits for token in self.tokens)

    @property
    def mean_surprisal_bits(self) -> float:
        """The cross-entropy, in bits per token (or word): log2 of the perplexity."""
        return self.total_bits / len(self.tokens)


def _checked_text(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("The text is empty: paste at least one word.")
    if len(text) > MAX_PERPLEXITY_CHARACTERS:
        raise ValueError(
            f"The text is {len(text):,} characters, over the limit of {MAX_PERPLEXITY_CHARACTERS:,}: "
            "paste a shorter one."
        )
    return text


def _result(pieces: list[str], bits: list[float], unit: str) -> PerplexityResult:
    tokens = [TokenSurprisal(piece, float(b)) for piece, b in zip(pieces, bits)]
    return PerplexityResult(2 ** (sum(bits) / len(bits)), tokens, unit)


def document_start_id(tokenizer) -> int | None:
    """The token a model saw before the first token of each training document, to predict a text's first token.

    The document separator where the vocabulary has one (an instruct model's "beginning" token is often the
    start of a chat turn, after which plain text reads as very unlikely), else the beginning-of-sequence token,
    else the end-of-sequence one (GPT-2 uses it for both), as evaluation harnesses do.
    """
    separator = tokenizer.convert_tokens_to_ids(DOCUMENT_SEPARATOR)  # the unknown token's id when it is missing
    if separator is not None and tokenizer.convert_ids_to_tokens(separator) == DOCUMENT_SEPARATOR:
        return separator
    if tokenizer.bos_token_id is not None:
        return tokenizer.bos_token_id
    return tokenizer.eos_token_id


def _token_pieces(generator: TextGenerator, text: str) -> tuple[list[int], list[str]]:
    """The text's token ids and, for each, the stretch of the text it covers (spaces before it included).

    A token that only completes a character the previous token began covers nothing: its piece is "".
    """
    tokenizer = generator.tokenizer
    try:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
    except NotImplementedError:  # slow (Python) tokenizers have no offsets: read each token on its own
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids, [generator.token_text(token_id) for token_id in ids]
    pieces, covered = [], 0
    for _, end in offsets:
        pieces.append(text[covered:end] if end > covered else "")
        covered = max(covered, end)
    if pieces:
        pieces[-1] += text[covered:]
    return list(encoded["input_ids"]), pieces


@torch.inference_mode()
def transformer_perplexity(generator: TextGenerator, text: str) -> PerplexityResult:
    """Perplexity of `text` under the transformer and the surprisal of each of its tokens, in one forward pass."""
    text = _checked_text(text)
    ids, pieces = _token_pieces(generator, text)
    start = document_start_id(generator.tokenizer)
    if start is None:
        raise ValueError(f"{generator.name}'s tokenizer has no start or end token to predict the first token from.")
    if len(ids) + 1 > generator.context_length:
        raise ValueError(
            f"The text is {len(ids):,} tokens, over {generator.name}'s context of {generator.context_length:,}: "
            "paste a shorter one."
        )
    input_ids = torch.tensor([[start, *ids]], device=generator.device)
    logits = generator.model(input_ids=input_ids).logits[0, :-1].float()  # (T, vocabulary): position t predicts t + 1
    nats = torch.nn.functional.cross_entropy(logits, input_ids[0, 1:], reduction="none")
    return _result(pieces, (nats / math.log(2)).tolist(), "token")


def smoothed_probability(model: NgramModel, history: list[str], word: str) -> float:
    """p(word | the last n-1 words of history) with interpolated Witten-Bell smoothing, never zero.

    Each context's counts are mixed with the next shorter context's estimate, which gets the weight
    t / (c + t): a context followed by c words of t different kinds. So a context that was always followed by
    the same word trusts its counts, one followed by many different words leans on the shorter context.
    The shortest level (plain word frequencies) is mixed with a uniform share over the corpus's word types plus
    one for "a word never seen", so an unseen word gets a small but finite probability.
    """
    unigrams = model.counts[0][()]
    types = len(unigrams)
    probability = (unigrams.get(word, 0) + types / (types + 1)) / (sum(unigrams.values()) + types)
    for k in range(1, min(model.n - 1, len(history)) + 1):
        followers = model.counts[k].get(tuple(history[len(history) - k :]))
        if not followers:  # never seen, so no longer context was either: the shorter estimate stands
            break
        kinds = len(followers)
        probability = (followers.get(word, 0) + kinds * probability) / (sum(followers.values()) + kinds)
    return probability


def _word_pieces(text: str, words: list[str]) -> list[str]:
    """Each word with what precedes it since the previous word (spaces, line breaks): the pieces join into the text."""
    pieces, covered = [], 0
    for word in words:
        end = text.index(word, covered) + len(word)
        pieces.append(text[covered:end])
        covered = end
    pieces[-1] += text[covered:]
    return pieces


def ngram_perplexity(model: NgramModel, text: str) -> PerplexityResult:
    """Perplexity of `text` under the n-gram model (Witten-Bell smoothed, see `smoothed_probability`), per word.

    Words are split as the model splits its corpus (punctuation marks are words); each is predicted from the
    n-1 words of the text before it, the first from word frequencies alone.
    """
    words = split_words(_checked_text(text))  # any text that is not blank has at least one word or mark
    context = model.n - 1
    bits = [
        -math.log2(smoothed_probability(model, words[max(0, position - context) : position], word))
        for position, word in enumerate(words)
    ]
    return _result(_word_pieces(text, words), bits, "word")


# ---------------------------------------------------------------------------------------------
# Attention


def attention_ranges(generator: TextGenerator) -> tuple[Range, Range]:
    """The layers (1-based) and heads (0 = the mean of all heads) this model has, from its config."""
    config = generator.model.config
    layers, heads = int(config.num_hidden_layers), int(config.num_attention_heads)
    return Range(1, layers, min(ATTENTION_LAYER.default, layers)), Range(0, heads, ATTENTION_HEAD.default)


def checked_layer_and_head(generator: TextGenerator, layer, head) -> tuple[int, int]:
    """Layer and head as whole numbers within this model's ranges; else a ValueError naming them."""
    layers, heads = attention_ranges(generator)
    if not (is_whole_number(layer) and layers.low <= layer <= layers.high):
        raise ValueError(f"layer must be a whole number from 1 to {layers.high} for {generator.name} (got {layer!r}).")
    if not (is_whole_number(head) and heads.low <= head <= heads.high):
        raise ValueError(
            f"head must be a whole number from 0 (the mean of all heads) to {heads.high} for {generator.name} "
            f"(got {head!r})."
        )
    return int(layer), int(head)


def attention_input_ids(generator: TextGenerator, prompt: str, answer: str = "", chat: bool = True) -> list[int]:
    """The tokens the model reads for a prompt and an answer to it: the prompt wrapped as generation wraps it
    (chat template or plain), then the answer."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("The prompt is empty: type at least one word.")
    if len(prompt) + len(answer) > MAX_INSPECTED_CHARACTERS:
        raise ValueError(
            f"The prompt and answer are {len(prompt) + len(answer):,} characters; the attention view reads at most "
            f"{MAX_ATTENTION_TOKENS} tokens: shorten them."
        )
    prepared = generator.prepare_prompt(prompt, SamplingSettings(max_new_tokens=1, chat=chat), prefix=answer)
    ids = prepared.input_ids[0].tolist()
    if prepared.dropped_tokens or len(ids) > MAX_ATTENTION_TOKENS:
        raise ValueError(
            f"The prompt and answer are {len(ids) + prepared.dropped_tokens:,} tokens; the attention view reads at "
            f"most {MAX_ATTENTION_TOKENS}: shorten the prompt or generate fewer tokens."
        )
    return ids


@dataclass(frozen=True)
class LayerAttention:
    """One layer's attention over a text, captured from a forward pass: every head's weights and their inputs.

    Shapes: T tokens, H query heads sharing K key/value heads (grouped-query attention), d numbers per head.
    """

    model_name: str
    layer: int  # 1-based
    tokens: list[str]  # each token as it reads on its own
    weights: torch.Tensor  # (H, T, T): weights[h, i, j] = how much token i attends to token j in head h + 1
    queries: torch.Tensor  # (H, T, d), after the rotary position embedding
    keys: torch.Tensor  # (K, T, d), after the rotary position embedding, as the model cached them
    values: torch.Tensor  # (K, T, d)
    head_outputs: torch.Tensor  # (H, T, d): what the layer's attention actually produced, per head
    computed_in: torch.dtype = torch.float32  # the number format the layer ran in (its outputs are rounded to it)

    @property
    def heads(self) -> int:
        return self.queries.shape[0]

    @property
    def kv_heads(self) -> int:
        return self.keys.shape[0]

    def kv_head(self, head: int) -> int:
        """The key/value head (1-based) that query head `head` (1-based) reads: consecutive query heads share one."""
        return (head - 1) // (self.heads // self.kv_heads) + 1

    def head_weights(self, head: int) -> torch.Tensor:
        """(T, T) weights of one head (1-based), or their mean over all heads for head 0."""
        return self.weights.mean(dim=0) if head == 0 else self.weights[head - 1]


def _attention_modules(model) -> list[torch.nn.Module]:
    """The self-attention module of each layer, in order (Llama-style: q/k/v/o projections and a layer index)."""
    found = [
        module
        for module in model.modules()
        if all(hasattr(module, name) for name in ("q_proj", "k_proj", "v_proj", "o_proj", "layer_idx"))
    ]
    return sorted(found, key=lambda module: module.layer_idx)


@torch.inference_mode()
def capture_attention(generator: TextGenerator, input_ids: list[int], layer: int) -> LayerAttention:
    """Run the model once over `input_ids` and capture layer `layer`'s (1-based) real queries, keys, values and
    attention output with hooks; compute its weights with the model's own eager attention code.

    The model keeps its fast attention (sdpa), which never forms the weights, so generation is untouched: the
    hooks see only this thread's forward pass and are removed after it.
    """
    layer, _ = checked_layer_and_head(generator, layer, 0)
    modules = _attention_modules(generator.model)
    attention = modules[layer - 1] if len(modules) == generator.model.config.num_hidden_layers else None
    modeling = sys.modules[type(attention).__module__] if attention is not None else None
    rotate = getattr(modeling, "apply_rotary_pos_emb", None)
    eager_attention = getattr(modeling, "eager_attention_forward", None)
    if rotate is None or eager_attention is None:
        raise ValueError(f"{generator.name}'s attention is not of the kind this view reads (Llama-style, rotary).")

    captured: dict[str, object] = {}
    this_thread = threading.get_ident()

    def keep(name: str, value) -> None:
        if threading.get_ident() == this_thread:  # another user's generation may run the same modules meanwhile
            captured[name] = value

    hooks = [
        attention.register_forward_pre_hook(
            lambda module, args, kwargs: keep("cos_sin", kwargs["position_embeddings"]), with_kwargs=True
        ),
        attention.q_proj.register_forward_hook(lambda module, args, output: keep("q", output)),
        attention.k_proj.register_forward_hook(lambda module, args, output: keep("k", output)),
        attention.o_proj.register_forward_pre_hook(lambda module, args: keep("output", args[0])),
    ]
    try:
        ids = torch.tensor([input_ids], device=generator.device)
        cache = generator.model(input_ids=ids, use_cache=True).past_key_values
    finally:
        for hook in hooks:
            hook.remove()

    tokens, head_dim = len(input_ids), attention.head_dim
    cos, sin = captured["cos_sin"]
    # The projections come out as (1, T, heads * d); attention works on (1, heads, T, d).
    q = captured["q"].view(1, tokens, -1, head_dim).transpose(1, 2)
    k = captured["k"].view(1, tokens, -1, head_dim).transpose(1, 2)
    queries, rotated_keys = rotate(q, k, cos, sin)
    keys, values = cache.layers[layer - 1].keys, cache.layers[layer - 1].values  # (1, K, T, d), rotated
    tolerance = 1e-4 if keys.dtype == torch.float32 else 1e-2
    if (rotated_keys - keys).abs().max() > tolerance * max(1.0, keys.abs().max().item()):
        raise ValueError(f"{generator.name}'s attention is not of the kind this view reads (Llama-style, rotary).")

    # The model's own weights: its eager attention path, given the mask it builds (-inf above the diagonal), in
    # float32 from the layer's real Q, K and V, so a 16-bit or quantized model's weights still sum to one.
    queries, keys, values = queries.float(), keys.float(), values.float()
    blocked = torch.ones(tokens, tokens, dtype=torch.bool, device=keys.device).triu(1)
    mask = torch.zeros(1, 1, tokens, tokens, dtype=queries.dtype, device=keys.device)
    mask.masked_fill_(blocked, torch.finfo(queries.dtype).min)
    _, weights = eager_attention(attention, queries, keys, values, mask, scaling=attention.scaling)
    outputs = captured["output"].view(tokens, -1, head_dim).transpose(0, 1)  # (H, T, d)
    return LayerAttention(
        model_name=generator.name,
        layer=layer,
        tokens=[generator.token_text(token_id) for token_id in input_ids],
        weights=weights[0].float().cpu(),
        queries=queries[0].float().cpu(),
        keys=keys[0].float().cpu(),
        values=values[0].float().cpu(),
        head_outputs=outputs.float().cpu(),
        computed_in=outputs.dtype,
    )


def attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, causal: bool = True, scaled: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The seed's attention(query, key, value): softmax(Q K^T / sqrt(d)) V, with a decoder's causal mask.

    query, key, value: (T, d). Returns the context vectors (T, d) and the weights (T, T).
    """
    scores = query @ key.transpose(-2, -1)  # (T, T): how well each token's query matches every token's key
    if scaled:
        scores = scores / math.sqrt(query.shape[-1])  # keeps the scores' spread the same whatever d is
    if causal:  # a token may only look back: the scores of later tokens become -inf, so their weight is 0
        future = torch.ones_like(scores, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights


@dataclass(frozen=True)
class HeadRecomputation:
    """One head (or every head, for head 0) recomputed by hand from the captured Q, K and V, checked against the model,
    and what the mask and the scaling change."""

    head: int  # 0 = every head (the figures are the worst or the mean over them)
    kv_head: int | None  # the key/value head it shares (None for head 0)
    weights: torch.Tensor  # (T, T) the recomputed weights (their mean over heads for head 0)
    max_weight_difference: float  # largest |recomputed - the model's| weight
    max_output_difference: float  # largest |recomputed weights . V - the layer's real output| number
    largest_output: float  # largest |number| of the layer's real output, the scale of its rounding
    number_format: str  # the format the layer ran in ("float32", "bfloat16", ...)
    rounding_step: float  # that format's gap between 1 and the next number: its relative rounding
    top_weight: float  # a token's largest weight, averaged over tokens
    top_weight_unscaled: float  # the same without the 1/sqrt(d)
    future_share_unmasked: float  # without the causal mask: the share of attention a token would give later tokens


def recompute_head(capture: LayerAttention, head: int) -> HeadRecomputation:
    """Recompute head `head` (1-based; 0 = every head) with `attention` from the layer's own Q, K and V."""
    if not (is_whole_number(head) and 0 <= head <= capture.heads):
        raise ValueError(f"head must be a whole number from 0 to {capture.heads} (got {head!r}).")
    heads = range(1, capture.heads + 1) if head == 0 else [int(head)]
    weights, weight_gaps, output_gaps, tops, tops_unscaled, future_shares, largest = [], [], [], [], [], [], []
    for h in heads:
        q, k, v = capture.queries[h - 1], capture.keys[capture.kv_head(h) - 1], capture.values[capture.kv_head(h) - 1]
        output, w = attention(q, k, v)
        weights.append(w)
        weight_gaps.append((w - capture.weights[h - 1]).abs().max().item())
        output_gaps.append((output - capture.head_outputs[h - 1]).abs().max().item())
        largest.append(capture.head_outputs[h - 1].abs().max().item())
        tops.append(w.max(dim=-1).values.mean().item())
        tops_unscaled.append(attention(q, k, v, scaled=False)[1].max(dim=-1).values.mean().item())
        unmasked = attention(q, k, v, causal=False)[1]
        future_shares.append(unmasked.triu(1).sum(dim=-1)[:-1].mean().item() if len(q) > 1 else 0.0)
    return HeadRecomputation(
        head=int(head),
        kv_head=capture.kv_head(int(head)) if head else None,
        weights=torch.stack(weights).mean(dim=0),
        max_weight_difference=max(weight_gaps),
        max_output_difference=max(output_gaps),
        largest_output=max(largest),
        number_format=str(capture.computed_in).removeprefix("torch."),
        rounding_step=torch.finfo(capture.computed_in).eps,
        top_weight=sum(tops) / len(tops),
        top_weight_unscaled=sum(tops_unscaled) / len(tops_unscaled),
        future_share_unmasked=sum(future_shares) / len(future_shares),
    )


def attention_json(capture: LayerAttention, head: int) -> dict:
    """{"tokens": [...], "weights": [[...]]}, weights[i][j] = how much token i attends to token j (rounded)."""
    weights = capture.head_weights(head)
    return {
        "model": capture.model_name,
        "layer": capture.layer,
        "head": head,  # 0 = the mean of all heads
        "kv_head": capture.kv_head(head) if head else None,
        "tokens": capture.tokens,
        "weights": [[round(w, 5) for w in row] for row in weights.tolist()],
    }


# ---------------------------------------------------------------------------------------------
# Pictures


@dataclass(frozen=True)
class PictureLayout:
    """Where a drawn heat-map's cells lie (one box, or one per head for a grid), so a click can be read back."""

    first_token: int  # index of the first token shown (the earlier ones are summed into one column)
    shown_tokens: int
    cells: list[tuple[int, int, int, int]]  # pixel boxes (left, top, right, bottom)

    def row_at(self, x: float, y: float) -> int | None:
        """The token (index in the whole text) whose row is at pixel (x, y) of a single heat-map, if any."""
        left, top, right, bottom = self.cells[0]
        if not (left <= x <= right and top <= y <= bottom):
            return None
        return self.first_token + min(int((y - top) / (bottom - top) * self.shown_tokens), self.shown_tokens - 1)

    def head_at(self, x: float, y: float) -> int | None:
        """The head (1-based) whose small map is at pixel (x, y) of a grid of heads, if any."""
        for head, (left, top, right, bottom) in enumerate(self.cells, start=1):
            if left <= x <= right and top <= y <= bottom:
                return head
        return None


def token_label(token: str, width: int = 12) -> str:
    """A token as an axis label: spaces and line breaks made visible, long ones cut."""
    label = token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")
    return label if len(label) <= width else label[: width - 1] + "…"


def _shown_window(weights: torch.Tensor, shown: int) -> tuple[int, torch.Tensor]:
    """The last `shown` rows and columns; with more tokens, a first column holds what went to the earlier ones."""
    first = max(0, weights.shape[-1] - shown)
    window = weights[..., first:, first:]
    if first:
        earlier = weights[..., first:, :first].sum(dim=-1, keepdim=True)
        window = torch.cat([earlier, window], dim=-1)
    return first, window


def _masked(window: torch.Tensor, first: int) -> np.ma.MaskedArray:
    """Cells above the diagonal (later tokens, which the causal mask hides) masked out, to draw them apart."""
    rows, columns = window.shape[-2:]
    offset = columns - rows  # the "earlier" column shifts the diagonal right by one
    future = np.triu(np.ones((rows, columns), dtype=bool), k=offset + 1)
    return np.ma.masked_array(window.numpy(), mask=np.broadcast_to(future, window.shape))


def _figure_to_picture(figure, axes: list, first: int, shown: int) -> tuple[Image.Image, PictureLayout]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    height = figure.bbox.height
    cells = []
    for ax in axes:
        box = ax.get_window_extent()  # display pixels, origin at the bottom left
        cells.append((round(box.x0), round(height - box.y1), round(box.x1), round(height - box.y0)))
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return image, PictureLayout(first, shown, cells)


def draw_attention_map(
    tokens: list[str], weights: torch.Tensor, title: str, shown: int = ATTENTION_SHOWN_TOKENS
) -> tuple[Image.Image, PictureLayout]:
    """A token-by-token heat-map of (T, T) weights: row i is what token i looked at. Shows the last `shown` tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    first, window = _shown_window(weights, shown)
    rows = window.shape[0]
    columns = [token_label(t) for t in tokens[first:]]
    if first:
        columns = [f"({first} earlier)"] + columns
    # Inches: room for the labels around a map of about 17 px a token at 100 dpi, never smaller than 4 inches; the
    # top margin leaves the title clear of the label Gradio draws over an image's corner.
    side, left, bottom, top, right = max(4.0, 0.17 * len(columns)), 1.5, 1.4, 1.0, 1.3
    width, height = left + side + right, bottom + side + top
    figure = plt.figure(figsize=(width, height), dpi=100)
    ax = figure.add_axes((left / width, bottom / height, side / width, side / height))
    colours = plt.get_cmap("Blues").with_extremes(bad=HIDDEN_FUTURE)
    image = ax.imshow(_masked(window, first), cmap=colours, norm=PowerNorm(0.5, vmin=0, vmax=1), aspect="auto")
    font = 11 if rows <= 32 else 9
    ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=font)
    ax.set_yticks(range(rows), [token_label(t) for t in tokens[first:]], fontsize=font)
    ax.set_xlabel("looked at (keys)", fontsize=12)
    ax.set_ylabel("token (queries)", fontsize=12)
    ax.set_title(title, fontsize=13)
    bar = figure.colorbar(
        image, cax=figure.add_axes(((left + side + 0.2) / width, bottom / height, 0.2 / width, side / height))
    )
    bar.set_label("attention weight (colour ~ square root)", fontsize=11)
    return _figure_to_picture(figure, [ax], first, rows)


def draw_head_grid(capture: LayerAttention, shown: int = ATTENTION_SHOWN_TOKENS) -> tuple[Image.Image, PictureLayout]:
    """Every head of the layer as a small heat-map, at a glance (same window and colours as the big one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    first, window = _shown_window(capture.weights, shown)
    columns = math.ceil(math.sqrt(capture.heads))
    rows = math.ceil(capture.heads / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.5 * rows), dpi=100, squeeze=False)
    colours = plt.get_cmap("Blues").with_extremes(bad=HIDDEN_FUTURE)
    masked = _masked(window, first)
    axes = []
    for index, ax in enumerate(grid.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if index >= capture.heads:
            ax.axis("off")
            continue
        ax.imshow(masked[index], cmap=colours, norm=PowerNorm(0.5, vmin=0, vmax=1), aspect="auto")
        ax.set_title(f"head {index + 1} · K/V {capture.kv_head(index + 1)}", fontsize=11)
        axes.append(ax)
    figure.tight_layout(rect=(0, 0, 1, 0.94))  # the top strip stays clear of the label Gradio draws over images
    return _figure_to_picture(figure, axes, first, window.shape[-2])


# ---------------------------------------------------------------------------------------------
# Branching


def branch_prefix(generator: TextGenerator, generation: Generation, position: int, token_id: int) -> str:
    """The answer up to its token `position` (0-based) with `token_id` there instead: what a branch continues."""
    if not 0 <= position < len(generation.new_ids):
        raise ValueError(f"position must be from 0 to {len(generation.new_ids) - 1} (got {position!r}).")
    if token_id in generator.tokenizer.all_special_ids:
        raise ValueError("That token ends the answer, so there is nothing to continue: pick another one.")
    return generator.tokenizer.decode(generation.new_ids[:position] + [token_id])
