"""Inside the transformer, on tiny random Llamas (the shared one and a grouped-query one): perplexity and surprisal
for the transformer and the n-gram model; one slow test on the real SmolLM2."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from pipelines.core import registry
from pipelines.text.generation import TextGenerator, load_text_generator
from pipelines.text.inspection import (
    document_start_id,
    ngram_perplexity,
    smoothed_probability,
    transformer_perplexity,
)
from pipelines.text.ngram import NgramModel, split_words
from pipelines.text.options import MAX_PERPLEXITY_CHARACTERS
from pipelines.text.sample_texts import SAMPLE_TEXTS
from tests.test_pipelines_text import WORDS, tiny_model_folder  # noqa: F401 (the shared tiny Llama fixture)

SEA = SAMPLE_TEXTS["The sea"]


@pytest.fixture(scope="module")
def tiny(tiny_model_folder) -> TextGenerator:  # noqa: F811
    return load_text_generator(str(tiny_model_folder))


@pytest.fixture(scope="module")
def tiny_gqa_folder(tiny_model_folder, tmp_path_factory):  # noqa: F811
    """The shared tiny Llama's tokenizer with grouped-query attention: 3 layers, 4 query heads on 2 key/value heads."""
    folder = tmp_path_factory.mktemp("tiny-gqa-llama")
    AutoTokenizer.from_pretrained(tiny_model_folder).save_pretrained(folder)
    config = LlamaConfig.from_pretrained(tiny_model_folder)
    config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads, config.head_dim = 3, 4, 2, 8
    torch.manual_seed(1)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_gqa(tiny_gqa_folder) -> TextGenerator:
    return load_text_generator(str(tiny_gqa_folder))


# ---------------------------------------------------------------------------------------------
# Transformer perplexity


def test_transformer_perplexity_covers_the_text_and_is_two_to_the_mean_surprisal(tiny):
    text = "the sea is calm and blue\nboats sail on waves"
    result = transformer_perplexity(tiny, text)
    assert "".join(token.text for token in result.tokens) == text
    assert len(result.tokens) == len(tiny.tokenizer(text, add_special_tokens=False)["input_ids"])
    bits = [token.surprisal_bits for token in result.tokens]
    assert all(math.isfinite(b) and b >= 0 for b in bits)
    assert result.perplexity == pytest.approx(2 ** (sum(bits) / len(bits)))
    assert result.mean_surprisal_bits == pytest.approx(math.log2(result.perplexity))
    assert result.unit == "token"
    assert transformer_perplexity(tiny, text) == result  # no randomness anywhere


def test_each_surprisal_is_the_models_own_next_token_probability(tiny_gqa):
    """Token i is scored by the distribution the model gives after the start token and tokens 0..i-1 (no off-by-one)."""
    text = "wind blows over sand a gull cries"
    result = transformer_perplexity(tiny_gqa, text)
    ids = tiny_gqa.tokenizer(text, add_special_tokens=False)["input_ids"]
    start = document_start_id(tiny_gqa.tokenizer)
    assert start == tiny_gqa.tokenizer.bos_token_id  # this tokenizer has no <|endoftext|>
    for position in range(len(ids)):
        with torch.inference_mode():
            logits = tiny_gqa.model(input_ids=torch.tensor([[start, *ids[:position]]])).logits[0, -1]
        expected = -torch.log_softmax(logits.float(), dim=-1)[ids[position]].item() / math.log(2)
        assert result.tokens[position].surprisal_bits == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_the_document_separator_is_preferred_as_the_start_token(tiny_model_folder, tmp_path):  # noqa: F811
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_folder)
    assert document_start_id(tokenizer) == tokenizer.bos_token_id
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|endoftext|>"]})
    assert document_start_id(tokenizer) == tokenizer.convert_tokens_to_ids("<|endoftext|>") != tokenizer.bos_token_id


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("sea " * (MAX_PERPLEXITY_CHARACTERS // 4 + 1), f"{MAX_PERPLEXITY_CHARACTERS:,}"),
        (" ".join(WORDS[:10] * 60), "context of 512"),  # 600 tokens in under 4,000 characters
    ],
)
def test_transformer_perplexity_refuses_empty_and_too_long_texts(tiny, text, message):
    with pytest.raises(ValueError, match=message):
        transformer_perplexity(tiny, text)


# ---------------------------------------------------------------------------------------------
# n-gram perplexity


def test_witten_bell_by_hand():
    model = NgramModel.fit("a b a b c", 2)
    # Unigrams a:2 b:2 c:1 </s>:1, so N = 6 tokens of 4 types, and a uniform 1/5 over the types plus "unseen".
    unigram_a = (2 + 4 / 5) / (6 + 4)
    assert smoothed_probability(model, [], "a") == pytest.approx(unigram_a)
    # "b" was followed by a and c once each: c = 2, t = 2.
    assert smoothed_probability(model, ["b"], "a") == pytest.approx((1 + 2 * unigram_a) / (2 + 2))
    assert smoothed_probability(model, ["zebra"], "a") == pytest.approx(unigram_a)  # unseen context: backs off
    assert smoothed_probability(model, ["b"], "zebra") == pytest.approx(2 * (4 / 5 / 10) / 4)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("history", [[], ["the"], ["the", "sea"], ["In", "the", "harbour", "the"], ["zebra", "the"]])
def test_smoothed_probabilities_sum_to_one_over_the_words_and_the_unseen(n, history):
    model = NgramModel.fit(SEA, 5).with_order(n)
    types = list(model.counts[0][()])
    total = sum(smoothed_probability(model, history, word) for word in types)
    total += smoothed_probability(model, history, "a-word-never-seen")  # stands for every unseen word at once
    assert total == pytest.approx(1.0, abs=1e-9)


def test_unseen_words_give_a_finite_perplexity():
    model = NgramModel.fit(SEA, 3)
    result = ngram_perplexity(model, "Quantum zebras juggle marmalade.")
    assert math.isfinite(result.perplexity) and result.perplexity > 1
    assert result.unit == "word" and [token.text for token in result.tokens] == [
        "Quantum",
        " zebras",
        " juggle",
        " marmalade",
        ".",
    ]


def test_the_corpus_reads_as_less_surprising_than_its_words_shuffled():
    model = NgramModel.fit(SEA, 3)
    sentence = "In the harbour the boats wait for the tide."
    words = split_words(sentence)
    shuffled = " ".join(reversed(words))
    assert ngram_perplexity(model, sentence).perplexity < ngram_perplexity(model, shuffled).perplexity / 5
    typo = ngram_perplexity(model, "In the harbour the baots wait for the tide.")
    surprisals = {token.text.strip(): token.surprisal_bits for token in typo.tokens}
    assert surprisals["baots"] == max(surprisals.values())


def test_ngram_perplexity_refuses_empty_and_too_long_texts():
    model = NgramModel.fit(SEA, 2)
    with pytest.raises(ValueError, match="empty"):
        ngram_perplexity(model, " \n ")
    with pytest.raises(ValueError, match=f"{MAX_PERPLEXITY_CHARACTERS:,}"):
        ngram_perplexity(model, "sea " * MAX_PERPLEXITY_CHARACTERS)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=200))
def test_ngram_pieces_always_join_into_the_text(text):
    if not split_words(text) or not text.strip():
        return
    model = NgramModel.fit(SEA, 2)
    result = ngram_perplexity(model, text)
    assert "".join(token.text for token in result.tokens) == text
    assert all(math.isfinite(token.surprisal_bits) and token.surprisal_bits > 0 for token in result.tokens)


# ---------------------------------------------------------------------------------------------
# The real model


@pytest.mark.slow
def test_real_smollm2_finds_shuffled_words_and_typos_surprising():
    generator = registry.load("smollm2-135m")
    assert generator.tokenizer.convert_ids_to_tokens(document_start_id(generator.tokenizer)) == "<|endoftext|>"
    natural = transformer_perplexity(generator, "The cat sat on the mat and looked out of the window.")
    shuffled = transformer_perplexity(generator, "window the mat of cat on out looked The sat and the.")
    assert natural.perplexity < 100 < shuffled.perplexity
    typo = transformer_perplexity(generator, "The cat sat on the mta and looked out of the window.")
    worst = max(typo.tokens, key=lambda token: token.surprisal_bits)
    assert "mt" in worst.text or "ta" in worst.text
