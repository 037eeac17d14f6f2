"""Inside the transformer: how surprising a text is to a language model (perplexity and per-token surprisal), for the
transformer and for the word n-gram model.

Surprisal is -log2 p, in bits: 1 bit is a coin flip, 10 bits a one-in-a-thousand pick. Perplexity is 2 to the
power of the mean surprisal: the number of equally likely choices the model was, on average, torn between.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pipelines.text.generation import TextGenerator
from pipelines.text.ngram import NgramModel, split_words
from pipelines.text.options import MAX_PERPLEXITY_CHARACTERS

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
