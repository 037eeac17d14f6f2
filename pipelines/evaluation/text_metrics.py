"""Text metrics: BLEU (sacrebleu's corpus BLEU) and ROUGE-1/2/L (rouge-score) of candidate lines against one
reference line each, the n-grams they share (for highlighting), and a ready example that continues held-out
sentences of a sample text with each text model.

BLEU counts how many of a candidate's 1- to 4-grams appear in the reference (each at most as often as there),
takes the geometric mean of the four precisions and penalises candidates shorter than the references. ROUGE-n is
the F-measure of shared n-grams; ROUGE-L of the longest common subsequence. Neither knows what words mean.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass

from pipelines.core.weights import WEIGHTS_DIR
from pipelines.evaluation.options import MAX_LINES, MAX_TEXT_CHARS

MAX_ORDER = 4  # BLEU's n-grams: 1 to 4 words
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def split_lines(text: str, name: str) -> list[str]:
    """One sentence a line; trailing blank lines dropped. A ValueError names the limits."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name} is empty: write one sentence a line.")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"{name} is {len(text):,} characters, over the limit of {MAX_TEXT_CHARS:,}.")
    lines = text.strip("\n").split("\n")
    if len(lines) > MAX_LINES:
        raise ValueError(f"{name} has {len(lines):,} lines, over the limit of {MAX_LINES:,}.")
    return [line.strip() for line in lines]


@dataclass(frozen=True)
class TextScores:
    bleu: float  # sacrebleu's corpus BLEU, 0-100
    rouge1: float  # mean F-measure over the lines, 0-1
    rouge2: float
    rougeL: float  # noqa: N815 (the public API's key)
    lines: int
    bleu_precisions: list[float]  # the 1- to 4-gram precisions, 0-100
    brevity_penalty: float
    candidate_words: int  # as BLEU's tokenizer counts them
    reference_words: int
    line_bleu: list[float]  # sentence BLEU of each line, 0-100 (smoothed, as sacrebleu does for single sentences)

    def as_json(self) -> dict:
        return asdict(self)


def score_lines(candidates: list[str], references: list[str]) -> TextScores:
    """Corpus BLEU and mean ROUGE F-measures of candidates[i] against references[i]."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if len(candidates) != len(references):
        raise ValueError(
            f"Candidates and references must have the same number of lines (one reference a candidate): "
            f"{len(candidates)} candidate lines, {len(references)} reference lines."
        )
    if not candidates:
        raise ValueError("There are no lines to score.")
    bleu = sacrebleu.corpus_bleu(candidates, [references])
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES))
    rouge = [scorer.score(reference, candidate) for candidate, reference in zip(candidates, references)]

    def mean_f(kind: str) -> float:
        return sum(score[kind].fmeasure for score in rouge) / len(rouge)

    return TextScores(
        bleu=min(float(bleu.score), 100.0),  # floating point can give 100.00000000000004 for identical text
        rouge1=mean_f("rouge1"),
        rouge2=mean_f("rouge2"),
        rougeL=mean_f("rougeL"),
        lines=len(candidates),
        bleu_precisions=[float(p) for p in bleu.precisions],
        brevity_penalty=float(bleu.bp),
        candidate_words=int(bleu.sys_len),
        reference_words=int(bleu.ref_len),
        line_bleu=[min(float(sacrebleu.sentence_bleu(c, [r]).score), 100.0) for c, r in zip(candidates, references)],
    )


def bleu_tokens(line: str) -> list[str]:
    """The words BLEU counts: sacrebleu's default ("13a") tokenizer, punctuation split off."""
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()(line).split()


def matched_spans(candidate: str, reference: str, max_order: int = MAX_ORDER) -> list[tuple[str, int]]:
    """The candidate's tokens, each with the length of the longest n-gram through it that BLEU counts as a
    match (0: none). An n-gram matches as many times as it occurs in the reference, as BLEU clips it."""
    tokens, reference_tokens = bleu_tokens(candidate), bleu_tokens(reference)
    longest = [0] * len(tokens)
    for n in range(1, max_order + 1):
        available = Counter(tuple(reference_tokens[i : i + n]) for i in range(len(reference_tokens) - n + 1))
        for start in range(len(tokens) - n + 1):
            gram = tuple(tokens[start : start + n])
            if available[gram] > 0:
                available[gram] -= 1
                for position in range(start, start + n):
                    longest[position] = max(longest[position], n)
    return list(zip(tokens, longest))


# ----------------------------------------------------------------------------------------------- the example

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
PROMPT_WORDS = 4  # each held-out sentence is continued from its first words


def sentences_of(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text.replace("\n", " ")) if s.strip()]


@dataclass(frozen=True)
class HeldOutSentences:
    """A sample text split into what the n-gram model may count and sentences to continue."""

    training_text: str  # every paragraph but the last
    held_out_text: str  # the last paragraph
    prompts: list[str]  # the first PROMPT_WORDS words of each held-out sentence
    references: list[str]  # the rest of each held-out sentence: what a model should write
    contexts: list[str]  # the whole text before each prompt (what a model reads)


def held_out_sentences(text: str) -> HeldOutSentences:
    """The last paragraph's sentences become prompts (their first words) and references (the rest)."""
    paragraphs = [p for p in text.strip().split("\n\n") if p.strip()]
    if len(paragraphs) < 2:
        raise ValueError("The text needs at least two paragraphs: one to learn from, one held out.")
    training_text, held_out_text = "\n\n".join(paragraphs[:-1]), paragraphs[-1]
    prompts, references, contexts = [], [], []
    before = training_text
    for sentence in sentences_of(held_out_text):
        words = sentence.split()
        if len(words) <= PROMPT_WORDS:
            before += " " + sentence
            continue
        prompt = " ".join(words[:PROMPT_WORDS])
        prompts.append(prompt)
        references.append(" ".join(words[PROMPT_WORDS:]))
        contexts.append(f"{before}\n\n{prompt}" if before == training_text else f"{before} {prompt}")
        before += ("\n\n" if before == training_text else " ") + sentence
    return HeldOutSentences(training_text, held_out_text, prompts, references, contexts)


def first_sentence(text: str, max_words: int) -> str:
    """A continuation cut at its first sentence end (or line break), at most `max_words` words."""
    text = text.strip().split("\n")[0]
    cut = _SENTENCE_END.split(text, maxsplit=1)[0]
    return " ".join(cut.split()[:max_words])


@dataclass(frozen=True)
class ModelContinuations:
    model: str  # what people read
    how: str  # what the model saw
    candidates: list[str]
    scores: TextScores
    perplexity: float | None  # of the held-out paragraph, in the model's own unit
    perplexity_unit: str
    bits_per_character: float | None  # the same, comparable across tokenizers


@dataclass(frozen=True)
class ContinuationExample:
    held_out: HeldOutSentences
    results: list[ModelContinuations]

    def as_json(self) -> dict:
        return asdict(self)


SHIPPED_EXAMPLE = WEIGHTS_DIR / "evaluation" / "text-example.json"  # written by training/precompute_evaluation.py


def continuation_example(text: str, transformer=None, seed: int = 0) -> ContinuationExample:
    """Continue each held-out sentence with: a 4-gram model that also counted the held-out paragraph (it can only
    recite it), a trigram model that counted the rest of the text, and (if given) the transformer, greedily.

    BLEU and ROUGE score each against the true rest of the sentences; perplexity (of the held-out paragraph)
    comes from pipelines.text.inspection, on the models that did not see it.
    """
    from pipelines.text.inspection import ngram_perplexity, transformer_perplexity
    from pipelines.text.ngram import NgramModel, join_words

    held_out = held_out_sentences(text)
    lengths = [len(reference.split()) for reference in held_out.references]

    def ngram_continuations(model: NgramModel) -> list[str]:
        continued = []
        for context, length in zip(held_out.contexts, lengths):
            words = model.generate(context, max_words=min(3 * length, 200), seed=seed).words
            continued.append(first_sentence(join_words(words), 2 * length))
        return continued

    def result(model, how, candidates, perplexity=None) -> ModelContinuations:
        scores = score_lines(candidates, held_out.references)
        if perplexity is None:
            return ModelContinuations(model, how, candidates, scores, None, "", None)
        bits_per_character = perplexity.total_bits / len(held_out.held_out_text)
        return ModelContinuations(
            model, how, candidates, scores, perplexity.perplexity, perplexity.unit, bits_per_character
        )

    memoriser = NgramModel.fit(text, 4)
    counted = NgramModel.fit(held_out.training_text, 3)
    results = [
        result("4-gram that also counted the held-out paragraph", "copies", ngram_continuations(memoriser)),
        result(
            "trigram on the other paragraphs",
            "counted the text before",
            ngram_continuations(counted),
            ngram_perplexity(counted, held_out.held_out_text),
        ),
    ]
    if transformer is not None:
        from pipelines.text.generation import SamplingSettings

        candidates = []
        for context, length in zip(held_out.contexts, lengths):
            settings = SamplingSettings(
                max_new_tokens=min(3 * length + 8, 96), temperature=0.0, repetition_penalty=1.0, seed=seed, chat=False
            )
            continued = transformer.generate(context, settings).text
            candidates.append(first_sentence(continued, 2 * length))
        results.append(
            result(
                f"transformer ({transformer.name}), greedy",
                "pretrained elsewhere; reads the text before",
                candidates,
                transformer_perplexity(transformer, held_out.held_out_text),
            )
        )
    return ContinuationExample(held_out, results)
