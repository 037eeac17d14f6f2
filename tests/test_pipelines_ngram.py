"""The word n-gram model: counting, back-off, faithfulness to the corpus, seeding and limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.text.ngram import END_OF_TEXT, NgramModel, join_words, split_words
from pipelines.text.sample_texts import SAMPLE_TEXTS

SEA = SAMPLE_TEXTS["The sea"]


def test_split_and_join_words():
    assert split_words("Hello, sea. The boat's sails!") == ["Hello", ",", "sea", ".", "The", "boat's", "sails", "!"]
    assert join_words(split_words("Hello, sea. The boat's sails!")) == "Hello, sea. The boat's sails!"


def test_counts_follow_the_corpus():
    model = NgramModel.fit("a b a b c", 2)
    assert model.counts[1][("a",)] == {"b": 2}
    assert model.counts[1][("b",)] == {"a": 1, "c": 1}
    assert model.counts[1][("c",)] == {END_OF_TEXT: 1}
    assert model.counts[0][()] == {"a": 2, "b": 2, "c": 1, END_OF_TEXT: 1}
    assert model.distinct_contexts == 3 and model.distinct_ngrams == 4 and model.vocabulary_size == 3
    table, used = model.next_word_probabilities(["a", "b"])
    assert used == 1 and dict(table) == {"a": 0.5, "c": 0.5}


def test_backs_off_to_shorter_contexts():
    model = NgramModel.fit("the cat sat . the dog sat . a cat ran .", 3)
    table, used = model.next_word_probabilities(["the", "cat"])
    assert used == 2 and dict(table) == {"sat": 1.0}
    table, used = model.next_word_probabilities(["my", "cat"])  # "my cat" was never seen; "cat" was
    assert used == 1 and dict(table) == {"sat": 0.5, "ran": 0.5}
    table, used = model.next_word_probabilities(["a", "unicorn"])  # nothing seen: word frequencies
    assert used == 0 and dict(table)["sat"] == pytest.approx(2 / 13)
    generation = model.generate("my unicorn", max_words=5, seed=0)
    assert generation.backoffs >= 1 and generation.context_lengths[0] == 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), start=st.sampled_from(["The", "sea", "boats", "night", "water"]))
def test_a_bigram_model_only_emits_pairs_from_its_corpus(seed, start):
    words = split_words(SEA)
    corpus_pairs = set(zip(words, words[1:]))
    generation = NgramModel.fit(SEA, 2).generate(start, max_words=80, seed=seed)
    emitted = [start] + generation.words
    assert generation.words
    assert set(zip(emitted, emitted[1:])) <= corpus_pairs


def test_a_unigram_model_ignores_context_but_uses_corpus_words():
    generation = NgramModel.fit(SEA, 1).generate("The sea", max_words=100, seed=1)
    assert set(generation.words) <= set(split_words(SEA))
    assert set(generation.context_lengths) == {0}


def test_a_high_order_model_on_a_small_corpus_recites_it():
    generation = NgramModel.fit(SEA, 5).generate("The sea is never", max_words=30, seed=3)
    assert " ".join(["The", "sea", "is", "never"] + generation.words) in " ".join(split_words(SEA))


def test_same_seed_same_words_other_seeds_differ():
    model = NgramModel.fit(" ".join(SAMPLE_TEXTS.values()), 2)
    assert model.generate("The", 40, seed=5).words == model.generate("The", 40, seed=5).words
    assert len({tuple(model.generate("The", 40, seed=seed).words) for seed in range(5)}) > 1


def test_model_size_grows_with_n():
    contexts = [NgramModel.fit(SEA, n).distinct_contexts for n in range(1, 6)]
    assert contexts[0] == 1  # a unigram model has one (empty) context
    assert all(smaller < larger for smaller, larger in zip(contexts, contexts[1:]))
    assert contexts[4] > 1.5 * contexts[1]  # almost every 4-word run in a short text is new


@pytest.mark.parametrize("n", [0, 6])
def test_n_outside_1_to_5_is_refused(n):
    with pytest.raises(ValueError, match="from 1 to 5"):
        NgramModel.fit(SEA, n)


def test_an_empty_corpus_is_refused():
    with pytest.raises(ValueError, match="no words"):
        NgramModel.fit("  \n ", 2)


def test_a_lower_order_model_inside_a_5_gram_model_equals_one_fitted_directly():
    full = NgramModel.fit(SEA, 5)
    for n in range(1, 6):
        direct = NgramModel.fit(SEA, n)
        inside = full.with_order(n)
        assert inside.counts == direct.counts
        assert inside.generate("The sea", 30, seed=n).words == direct.generate("The sea", 30, seed=n).words
