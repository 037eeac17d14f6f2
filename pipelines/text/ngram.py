"""A word n-gram language model: count which word follows each run of n-1 words, then sample.

This is how "the probability of the next word" was learned before neural networks: no training,
just counting. The model grows quickly with n because almost every long context is new.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field

from pipelines.core.limits import SEED, is_whole_number
from pipelines.text.options import NGRAM_ORDER, NGRAM_WORDS

MIN_ORDER, MAX_ORDER = NGRAM_ORDER.low, NGRAM_ORDER.high
END_OF_TEXT = "</s>"  # the tokenizer never produces this, so it cannot collide with a word
_WORD_PATTERN = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")
_NO_SPACE_BEFORE = set(".,;:!?)]}%…’”")
_NO_SPACE_AFTER = set("([{“‘")


def split_words(text: str) -> list[str]:
    """Words and punctuation marks as separate tokens: "Hi, sea." -> ["Hi", ",", "sea", "."]."""
    return _WORD_PATTERN.findall(text)


def join_words(words: list[str]) -> str:
    """The inverse of `split_words` as far as spacing goes: no space before punctuation."""
    text = ""
    for word in words:
        if text and word not in _NO_SPACE_BEFORE and text[-1] not in _NO_SPACE_AFTER:
            text += " "
        text += word
    return text


@dataclass
class NgramGeneration:
    words: list[str]  # the generated words only, without the prompt
    context_lengths: list[int]  # for each word, how many previous words the model could use
    backoffs: int = 0  # words chosen from a shorter context because the full one was never seen
    ended: bool = False  # the model reached a context seen only at the very end of the corpus

    @property
    def text(self) -> str:
        return join_words(self.words)


@dataclass
class NgramModel:
    """Counts of next words for every context of 0..n-1 previous words (the shorter ones for back-off)."""

    n: int
    # counts[k][context] = Counter of next words, for contexts of exactly k words
    counts: list[dict[tuple[str, ...], Counter]] = field(default_factory=list)

    @classmethod
    def fit(cls, corpus: str, n: int) -> NgramModel:
        """Count every n-gram (and every shorter one) in the corpus."""
        if not (is_whole_number(n) and MIN_ORDER <= n <= MAX_ORDER):
            raise ValueError(f"n must be a whole number from {MIN_ORDER} to {MAX_ORDER}.")
        n = int(n)
        words = split_words(corpus)
        if not words:
            raise ValueError("The corpus has no words: it needs at least one.")
        tokens = words + [END_OF_TEXT]
        counts: list[dict[tuple[str, ...], Counter]] = [{} for _ in range(n)]
        for position, next_word in enumerate(tokens):
            for k in range(min(n - 1, position) + 1):
                context = tuple(tokens[position - k : position])
                counts[k].setdefault(context, Counter())[next_word] += 1
        return cls(n, counts)

    def with_order(self, n: int) -> NgramModel:
        """The n-gram model inside this one: a 5-gram model holds every shorter model's counts."""
        if not (is_whole_number(n) and MIN_ORDER <= n <= self.n):
            raise ValueError(f"n must be from {MIN_ORDER} to {self.n}.")
        return NgramModel(int(n), self.counts[: int(n)])

    @property
    def distinct_contexts(self) -> int:
        """How many different runs of n-1 words the model has seen: its size."""
        return len(self.counts[self.n - 1])

    @property
    def distinct_ngrams(self) -> int:
        return sum(len(next_words) for next_words in self.counts[self.n - 1].values())

    @property
    def vocabulary_size(self) -> int:
        return len(self.counts[0][()]) - 1  # minus the end-of-text mark

    def next_word_probabilities(self, previous_words: list[str]) -> tuple[list[tuple[str, float]], int]:
        """Next-word probabilities for the longest seen suffix of `previous_words`, most likely first.

        Back-off: if the last n-1 words never occurred together, try the last n-2, and so on down
        to no context at all (plain word frequencies). Returns the table and the context length used.
        """
        for k in range(min(self.n - 1, len(previous_words)), -1, -1):
            context = tuple(previous_words[len(previous_words) - k :])
            next_words = self.counts[k].get(context)
            if next_words:
                total = sum(next_words.values())
                ranked = sorted(next_words.items(), key=lambda item: -item[1])  # stable: corpus order on ties
                return [(word, count / total) for word, count in ranked], k
        raise AssertionError("unreachable: the empty context is always seen")

    def generate(self, prompt: str, max_words: int, seed: int) -> NgramGeneration:
        """Sample up to `max_words` words after the prompt; the same seed gives the same words."""
        max_words = NGRAM_WORDS.check(max_words, "max_words")
        rng = random.Random(SEED.check(seed, "seed"))
        history = split_words(prompt)
        generation = NgramGeneration(words=[], context_lengths=[])
        for _ in range(max_words):
            table, used = self.next_word_probabilities(history)
            words, probabilities = zip(*table)
            word = rng.choices(words, weights=probabilities)[0]
            if word == END_OF_TEXT:
                generation.ended = True
                break
            generation.words.append(word)
            generation.context_lengths.append(used)
            generation.backoffs += used < min(self.n - 1, len(history))
            history.append(word)
        return generation


def health_probe(_: None = None) -> None:
    """Count a two-sentence corpus and generate three words: the n-gram model has no weights to load."""
    words = NgramModel.fit("the cat sat on the mat . the dog sat on the rug .", 2).generate("the", 3, seed=0).words
    if not words:
        raise RuntimeError("the n-gram model generated no words")
